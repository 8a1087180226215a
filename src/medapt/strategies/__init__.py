"""medapt.strategies."""
