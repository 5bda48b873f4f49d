from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiKeyScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_KEY_SCOPE_UNSPECIFIED: _ClassVar[ApiKeyScope]
    API_KEY_SCOPE_LABEL_READ: _ClassVar[ApiKeyScope]
    API_KEY_SCOPE_LABEL_WRITE: _ClassVar[ApiKeyScope]
    API_KEY_SCOPE_MODEL_INFERENCE: _ClassVar[ApiKeyScope]
    API_KEY_SCOPE_MODEL_TRAIN: _ClassVar[ApiKeyScope]
    API_KEY_SCOPE_LABEL_LOGS_READ: _ClassVar[ApiKeyScope]
    API_KEY_SCOPE_ALGO_LIBRARY: _ClassVar[ApiKeyScope]

class DatasetScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_SCOPE_UNSPECIFIED: _ClassVar[DatasetScope]
    DATASET_SCOPE_READ: _ClassVar[DatasetScope]
    DATASET_SCOPE_WRITE: _ClassVar[DatasetScope]
API_KEY_SCOPE_UNSPECIFIED: ApiKeyScope
API_KEY_SCOPE_LABEL_READ: ApiKeyScope
API_KEY_SCOPE_LABEL_WRITE: ApiKeyScope
API_KEY_SCOPE_MODEL_INFERENCE: ApiKeyScope
API_KEY_SCOPE_MODEL_TRAIN: ApiKeyScope
API_KEY_SCOPE_LABEL_LOGS_READ: ApiKeyScope
API_KEY_SCOPE_ALGO_LIBRARY: ApiKeyScope
DATASET_SCOPE_UNSPECIFIED: DatasetScope
DATASET_SCOPE_READ: DatasetScope
DATASET_SCOPE_WRITE: DatasetScope

class CreateProjectApiKeyRequest(_message.Message):
    __slots__ = ("project_hash", "title", "scopes", "validate_only", "request_id")
    PROJECT_HASH_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_hash: str
    title: str
    scopes: _containers.RepeatedScalarFieldContainer[ApiKeyScope]
    validate_only: bool
    request_id: str
    def __init__(self, project_hash: _Optional[str] = ..., title: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[ApiKeyScope, str]]] = ..., validate_only: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class ProjectApiKey(_message.Message):
    __slots__ = ("api_key", "title", "scopes", "project_hash", "fingerprint")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    PROJECT_HASH_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    title: str
    scopes: _containers.RepeatedScalarFieldContainer[ApiKeyScope]
    project_hash: str
    fingerprint: str
    def __init__(self, api_key: _Optional[str] = ..., title: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[ApiKeyScope, str]]] = ..., project_hash: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class ListProjectApiKeysRequest(_message.Message):
    __slots__ = ("project_hash",)
    PROJECT_HASH_FIELD_NUMBER: _ClassVar[int]
    project_hash: str
    def __init__(self, project_hash: _Optional[str] = ...) -> None: ...

class ListProjectApiKeysResponse(_message.Message):
    __slots__ = ("api_keys",)
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[ProjectApiKey]
    def __init__(self, api_keys: _Optional[_Iterable[_Union[ProjectApiKey, _Mapping]]] = ...) -> None: ...

class GetOrCreateProjectApiKeyRequest(_message.Message):
    __slots__ = ("project_hash", "validate_only")
    PROJECT_HASH_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    project_hash: str
    validate_only: bool
    def __init__(self, project_hash: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateDatasetApiKeyRequest(_message.Message):
    __slots__ = ("dataset_hash", "title", "scopes", "validate_only", "request_id")
    DATASET_HASH_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_hash: str
    title: str
    scopes: _containers.RepeatedScalarFieldContainer[DatasetScope]
    validate_only: bool
    request_id: str
    def __init__(self, dataset_hash: _Optional[str] = ..., title: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[DatasetScope, str]]] = ..., validate_only: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DatasetApiKey(_message.Message):
    __slots__ = ("dataset_hash", "api_key", "title", "key_hash", "scopes", "fingerprint")
    DATASET_HASH_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    dataset_hash: str
    api_key: str
    title: str
    key_hash: str
    scopes: _containers.RepeatedScalarFieldContainer[DatasetScope]
    fingerprint: str
    def __init__(self, dataset_hash: _Optional[str] = ..., api_key: _Optional[str] = ..., title: _Optional[str] = ..., key_hash: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[DatasetScope, str]]] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class ListDatasetApiKeysRequest(_message.Message):
    __slots__ = ("dataset_hash",)
    DATASET_HASH_FIELD_NUMBER: _ClassVar[int]
    dataset_hash: str
    def __init__(self, dataset_hash: _Optional[str] = ...) -> None: ...

class ListDatasetApiKeysResponse(_message.Message):
    __slots__ = ("api_keys",)
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[DatasetApiKey]
    def __init__(self, api_keys: _Optional[_Iterable[_Union[DatasetApiKey, _Mapping]]] = ...) -> None: ...

class GetOrCreateDatasetApiKeyRequest(_message.Message):
    __slots__ = ("dataset_hash", "validate_only")
    DATASET_HASH_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    dataset_hash: str
    validate_only: bool
    def __init__(self, dataset_hash: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...
