"""The routed online prediction service and batch scoring."""
