"""Work chains: the screening campaign and DFPT verification (one interface, an engine per subpackage)."""
