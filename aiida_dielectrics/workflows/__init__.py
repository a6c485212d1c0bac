"""Work chains: DFPT verification with one interface and an engine per work chain."""
