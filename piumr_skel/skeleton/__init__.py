"""The skeleton as data: every layout as one validated `Layout`, and its graph adjacency."""
