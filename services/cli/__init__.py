"""`redeem`: the operator's command line."""
