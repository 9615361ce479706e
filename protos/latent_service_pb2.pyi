from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    INT8: _ClassVar[DType]
    INT4: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
FLOAT16: DType
INT8: DType
INT4: DType

class Quantization(_message.Message):
    __slots__ = ("dtype", "scale", "zero_point")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ZERO_POINT_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    scale: _containers.RepeatedScalarFieldContainer[float]
    zero_point: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., scale: _Optional[_Iterable[float]] = ..., zero_point: _Optional[_Iterable[float]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("client_id", "latent_dim", "dtype", "label_set", "enrollment_secret", "token", "admin_token")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SET_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADMIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    latent_dim: int
    dtype: DType
    label_set: _containers.RepeatedScalarFieldContainer[int]
    enrollment_secret: str
    token: str
    admin_token: str
    def __init__(self, client_id: _Optional[str] = ..., latent_dim: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., label_set: _Optional[_Iterable[int]] = ..., enrollment_secret: _Optional[str] = ..., token: _Optional[str] = ..., admin_token: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("client_id", "token")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    token: str
    def __init__(self, client_id: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("upload_id", "client_id", "token", "num_rows", "latent_dim", "quantization", "total_chunks", "payload_crc32", "payload_bytes", "anchors")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_CRC32_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    ANCHORS_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    client_id: str
    token: str
    num_rows: int
    latent_dim: int
    quantization: Quantization
    total_chunks: int
    payload_crc32: int
    payload_bytes: int
    anchors: bool
    def __init__(self, upload_id: _Optional[str] = ..., client_id: _Optional[str] = ..., token: _Optional[str] = ..., num_rows: _Optional[int] = ..., latent_dim: _Optional[int] = ..., quantization: _Optional[_Union[Quantization, _Mapping]] = ..., total_chunks: _Optional[int] = ..., payload_crc32: _Optional[int] = ..., payload_bytes: _Optional[int] = ..., anchors: _Optional[bool] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("seq", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    data: bytes
    def __init__(self, seq: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: UploadChunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[UploadChunk, _Mapping]] = ...) -> None: ...

class UploadAck(_message.Message):
    __slots__ = ("upload_id", "rows_stored", "duplicate", "client_total_rows")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    rows_stored: int
    duplicate: bool
    client_total_rows: int
    def __init__(self, upload_id: _Optional[str] = ..., rows_stored: _Optional[int] = ..., duplicate: _Optional[bool] = ..., client_total_rows: _Optional[int] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("client_id", "token", "num_rows", "latent_dim", "quantization", "latents")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    token: str
    num_rows: int
    latent_dim: int
    quantization: Quantization
    latents: bytes
    def __init__(self, client_id: _Optional[str] = ..., token: _Optional[str] = ..., num_rows: _Optional[int] = ..., latent_dim: _Optional[int] = ..., quantization: _Optional[_Union[Quantization, _Mapping]] = ..., latents: _Optional[bytes] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("labels", "classes", "probabilities", "classifier_version")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_VERSION_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    classes: _containers.RepeatedScalarFieldContainer[int]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    classifier_version: int
    def __init__(self, labels: _Optional[_Iterable[int]] = ..., classes: _Optional[_Iterable[int]] = ..., probabilities: _Optional[_Iterable[float]] = ..., classifier_version: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("client_id", "token", "admin_token")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADMIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    token: str
    admin_token: str
    def __init__(self, client_id: _Optional[str] = ..., token: _Optional[str] = ..., admin_token: _Optional[str] = ...) -> None: ...

class ClientStatus(_message.Message):
    __slots__ = ("client_id", "latent_dim", "dtype", "rows", "uploads", "label_set", "anchor_rows")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    LABEL_SET_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_ROWS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    latent_dim: int
    dtype: DType
    rows: int
    uploads: int
    label_set: _containers.RepeatedScalarFieldContainer[int]
    anchor_rows: int
    def __init__(self, client_id: _Optional[str] = ..., latent_dim: _Optional[int] = ..., dtype: _Optional[_Union[DType, str]] = ..., rows: _Optional[int] = ..., uploads: _Optional[int] = ..., label_set: _Optional[_Iterable[int]] = ..., anchor_rows: _Optional[int] = ...) -> None: ...

class ClassifierStatus(_message.Message):
    __slots__ = ("version", "held_out_accuracy", "trained_rows", "trained_at", "description", "held_out_rows", "latent_dim", "classes", "client_conditioning", "anchor_map")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_AT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_ROWS_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CONDITIONING_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_MAP_FIELD_NUMBER: _ClassVar[int]
    version: int
    held_out_accuracy: float
    trained_rows: int
    trained_at: str
    description: str
    held_out_rows: int
    latent_dim: int
    classes: _containers.RepeatedScalarFieldContainer[int]
    client_conditioning: str
    anchor_map: str
    def __init__(self, version: _Optional[int] = ..., held_out_accuracy: _Optional[float] = ..., trained_rows: _Optional[int] = ..., trained_at: _Optional[str] = ..., description: _Optional[str] = ..., held_out_rows: _Optional[int] = ..., latent_dim: _Optional[int] = ..., classes: _Optional[_Iterable[int]] = ..., client_conditioning: _Optional[str] = ..., anchor_map: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("clients", "total_rows", "classifier", "latent_dim")
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[ClientStatus]
    total_rows: int
    classifier: ClassifierStatus
    latent_dim: int
    def __init__(self, clients: _Optional[_Iterable[_Union[ClientStatus, _Mapping]]] = ..., total_rows: _Optional[int] = ..., classifier: _Optional[_Union[ClassifierStatus, _Mapping]] = ..., latent_dim: _Optional[int] = ...) -> None: ...

class TrainClassifierRequest(_message.Message):
    __slots__ = ("admin_token", "config_toml")
    ADMIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TOML_FIELD_NUMBER: _ClassVar[int]
    admin_token: str
    config_toml: str
    def __init__(self, admin_token: _Optional[str] = ..., config_toml: _Optional[str] = ...) -> None: ...

class TrainClassifierResponse(_message.Message):
    __slots__ = ("classifier",)
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    classifier: ClassifierStatus
    def __init__(self, classifier: _Optional[_Union[ClassifierStatus, _Mapping]] = ...) -> None: ...

class RevokeTokensRequest(_message.Message):
    __slots__ = ("client_id", "token", "admin_token", "all")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADMIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    token: str
    admin_token: str
    all: bool
    def __init__(self, client_id: _Optional[str] = ..., token: _Optional[str] = ..., admin_token: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class RevokeTokensResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...
