"""Built on the engine: ablations, comparisons, fusion, demo, importers, drawing, synthetic data."""
