"""medapt.train."""
