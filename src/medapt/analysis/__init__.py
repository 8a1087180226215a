"""medapt.analysis."""
