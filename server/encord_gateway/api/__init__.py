"""The gRPC face: the per-call frame, the servicer, validation, metrics and the server assembly."""
