"""The local Encord emulator: a stateful stand-in for Encord's public API (v1) for the API-key operations."""
