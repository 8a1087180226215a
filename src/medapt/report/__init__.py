"""medapt.report."""
