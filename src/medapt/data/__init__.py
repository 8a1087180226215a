"""medapt.data."""
