"""medapt.cost."""
