"""medapt.evaluate."""
