"""The two parts of the method, TFAM and GIRL: torch modules that read no run config."""
