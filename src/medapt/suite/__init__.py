"""medapt.suite."""
