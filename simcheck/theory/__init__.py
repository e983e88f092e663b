"""The theory's numbers from trained weights: gamma, L, the positional margin and the
theorems' N (`bounds`), and p-bit hardness measured (`hardness`)."""
