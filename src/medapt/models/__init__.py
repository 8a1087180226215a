"""medapt.models."""
