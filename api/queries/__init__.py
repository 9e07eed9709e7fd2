"""Read models the API needs that no domain package offers yet (set-wise SQL, no loops)."""
