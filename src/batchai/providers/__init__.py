"""Node providers: where a cluster's nodes are and how processes start on them."""
