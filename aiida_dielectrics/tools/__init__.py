"""AiiDA-side utilities that are not processes: bulk provenance, profile set-up, queries, plots, archives."""
