"""From keypoints to model inputs: labels, splits, clip transforms, the clip cache and dataset."""
