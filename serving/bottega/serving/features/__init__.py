"""Request decoding and the online feature join of the prediction service.

- `policy`: per-feature freshness policies from a deployment spec (`FeaturePolicy`, `parse_policies`).
- `plan`: `FeaturePlan`, built once per model version from its signature and the catalog's `Resolution`: which
  fields a request carries, what to read from the online store, on-demand transforms, the model's input order.
- `decode`: `decode_instances`, the request body checked against a plan (`RequestError` names the field).
- `join`: `FeatureJoiner.assemble`, one concurrent multi-get, policies and on-demand transforms, the input matrix.
"""
