"""The feature catalog: entities, versioned feature groups and their features, searchable across projects."""
