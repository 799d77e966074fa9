"""Status derivation for every kind (pure): conditions and figures from what a reconcile observed."""
