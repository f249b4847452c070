"""An InferenceService rollout's validation stage: the candidate's answers compared with a
baseline's (the stable revision, or the model being migrated from) before it gets live traffic,
from a recorded request set (replay), from a copy of live requests (shadow), or both."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, field_validator
from pydantic.config import JsonDict

from stratus.api.common import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    ApiModel,
    Duration,
    Endpoint,
    Rule,
    SecretName,
    credentials_description,
    endpoint_description,
    min_duration_rule,
)

COMPARATORS_LIST: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}
MAX_COMPARATORS = 8
# A field path: JSON object keys and list indices joined by dots (predictions, outputs.0.data).
FIELD_PATTERN = r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$"
FieldPath = Annotated[str, StringConstraints(pattern=FIELD_PATTERN, max_length=256)]
PATH_PATTERN = r"^/[^\s?#]*$"
MIN_TIMEOUT = "10s"
# Keys of an external baseline's credentials Secret: a bearer token, or a user and password.
TOKEN_KEY = "token"  # noqa: S105 - the name of a Secret key
USERNAME_KEY = "username"
PASSWORD_KEY = "password"  # noqa: S105 - the name of a Secret key, not a password
CA_KEY = "ca.crt"


class Comparator(ApiModel):
    """How one pair of answers is judged to agree. A sample is a request for exact, numeric and
    hook; an instance (one element of the field's list) for label and topK."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="(self.type == 'hook') == has(self.url)",
            message="url is required with type hook, and only then",
            field_path=".url",
            check=lambda c: (c.type == "hook") == (c.url is not None),
        ),
        Rule(
            cel="self.type == 'numeric' || (!has(self.absolute) && !has(self.relative))",
            message="absolute and relative apply to type numeric only",
            field_path=".absolute",
            check=lambda c: c.type == "numeric" or (c.absolute is None and c.relative is None),
        ),
        Rule(
            cel="self.type == 'topK' || (!has(self.k) && !has(self.minOverlap))",
            message="k and minOverlap apply to type topK only",
            field_path=".k",
            check=lambda c: c.type == "topK" or (c.k is None and c.min_overlap is None),
        ),
        Rule(
            cel="self.type == 'hook' || !has(self.minScore)",
            message="minScore applies to type hook only",
            field_path=".minScore",
            check=lambda c: c.type == "hook" or c.min_score is None,
        ),
        Rule(
            cel="!(self.type in ['label', 'topK']) || (has(self.fields) && "
            "self.fields.size() == 1)",
            message="label and topK compare one field: set fields to exactly one path",
            field_path=".fields",
            check=lambda c: c.type not in ("label", "topK") or len(c.fields) == 1,
        ),
    )

    name: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=63, description="Name, in the report and metrics."
    )
    type: Literal["exact", "numeric", "label", "topK", "hook"] = Field(
        description="exact: the selected fields are equal as JSON. numeric: every number in "
        "them is within absolute or relative tolerance (and everything else equal). label: "
        "the field's list of labels, instance by instance. topK: the field's list of score "
        "lists (one per instance), the k highest scores' positions overlapping by at least "
        "minOverlap. hook: an HTTP service of yours judges each pair."
    )
    fields: list[FieldPath] = Field(
        default_factory=list,
        max_length=16,
        description="The answer's fields compared, as paths of object keys and list indices "
        "joined by dots (predictions, outputs.0.data). Empty: the whole answer. Only these "
        "fields appear in the report's examples.",
    )
    absolute: float | None = Field(
        default=None, ge=0, description="numeric: largest absolute difference that agrees."
    )
    relative: float | None = Field(
        default=None,
        ge=0,
        description="numeric: largest difference relative to the larger magnitude that agrees.",
    )
    k: int | None = Field(default=None, ge=1, le=1000, description="topK: how many (default 1).")
    min_overlap: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="topK: the share of the k positions both must have for an instance to "
        "agree (default 1: the same top k).",
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description='hook: POSTed {"baseline": ..., "candidate": ...} (the selected fields) '
        'by the validator pod, in the InferenceService\'s namespace; it answers {"agree": '
        'true|false} or {"score": x}.',
    )
    min_score: float | None = Field(
        default=None, description="hook: a score at or above it agrees (default 1)."
    )
    min_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="This comparator's threshold, instead of validation.minAgreement.",
    )


class Baseline(ApiModel):
    """What the candidate is compared with: the stable revision, or an external endpoint."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.url) || (!has(self.caConfigMap) && !has(self.credentialsSecret))",
            message="caConfigMap and credentialsSecret apply to an external url only",
            field_path=".url",
            check=lambda b: (
                b.url is not None or (b.ca_config_map is None and b.credentials_secret is None)
            ),
        ),
        Rule(
            cel="!has(self.caConfigMap) || self.url.startsWith('https://')",
            message="caConfigMap applies to an https:// url only",
            field_path=".caConfigMap",
            check=lambda b: b.ca_config_map is None or (b.url or "").startswith("https://"),
        ),
    )

    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="An external model's prediction URL (the model being migrated from), "
        "called from the validator pod in the InferenceService's namespace. Absent: the stable "
        "revision, at the same path as the candidate.",
    )
    ca_config_map: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description=f"A ConfigMap whose key {CA_KEY} holds the PEM CA certificates the "
        "baseline's certificate must chain to, instead of the image's public CAs.",
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=f"A Secret with key {TOKEN_KEY} (sent as a bearer token) or keys "
        f"{USERNAME_KEY} and {PASSWORD_KEY} (basic authentication), given to the validator "
        "pod only and never written to a status, Event or log.",
    )


class ConfigMapKey(ApiModel):
    """A key of a ConfigMap in the same namespace."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="ConfigMap.")
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key holding the requests."
    )


class Replay(ApiModel):
    """A recorded request set, sent to the candidate and the baseline before the candidate gets
    any live traffic. JSON lines: each a request body, or {"request": body, "expected":
    answer} with the answer the model should give (reported as accuracy, not gated on)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.configMap) != has(self.uri)",
            message="set exactly one of configMap and uri",
            field_path=".uri",
            check=lambda r: (r.config_map is None) != (r.uri is None),
        ),
        Rule(
            cel="has(self.uri) == has(self.sha256)",
            message="a uri needs its sha256, and sha256 applies to a uri only",
            field_path=".sha256",
            check=lambda r: (r.uri is None) == (r.sha256 is None),
        ),
        Rule(
            cel="has(self.uri) || (!has(self.endpoint) && !has(self.credentialsSecret))",
            message="endpoint and credentialsSecret apply to an s3:// or gs:// uri only",
            field_path=".endpoint",
            check=lambda r: (
                r.uri is not None or (r.endpoint is None and r.credentials_secret is None)
            ),
        ),
    )

    config_map: ConfigMapKey | None = Field(default=None, description=ConfigMapKey.__doc__)
    uri: str | None = Field(
        default=None,
        pattern=r"^(https|s3|gs)://.+",
        max_length=2048,
        description="https://, s3:// or gs:// location of the request set (one object).",
    )
    sha256: str | None = Field(
        default=None, pattern=r"^[a-f0-9]{64}$", description="The request set's SHA-256."
    )
    endpoint: Endpoint | None = Field(
        default=None, description=endpoint_description("AWS S3 for s3://")
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=credentials_description(
            "The validator pod's download of the request set", "Without it, no credentials."
        ),
    )
    path: str = Field(
        default="/predict",
        pattern=PATH_PATTERN,
        max_length=1024,
        description="Path the requests are POSTed to, on the candidate and the stable.",
    )
    limit: int = Field(default=10000, ge=1, le=1000000, description="Most recorded requests sent.")


class Shadow(ApiModel):
    """A copy of live requests sent to the candidate while every user gets the stable's answer:
    a proxy Stratus runs in front of the stable for the stage (and removes after it)."""

    percent: int = Field(
        default=100, ge=1, le=100, description="Share of live POST requests copied, in percent."
    )
    samples: int = Field(
        default=1000,
        ge=10,
        le=1000000,
        description="Samples compared, per comparator, before the shadow stage can pass.",
    )


class Validation(ApiModel):
    """Before its first step, the candidate's answers are compared with a baseline's; the
    rollout aborts (reason ValidationFailed) when agreement falls below minAgreement. With
    noiseFloor, the baseline is also asked twice and the candidate is judged on its
    disagreement beyond the baseline's own (a nondeterministic model is not blocked by noise)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.replay) || has(self.shadow)",
            message="set replay, shadow or both",
            field_path=".replay",
            check=lambda v: v.replay is not None or v.shadow is not None,
        ),
        min_duration_rule("timeout", MIN_TIMEOUT, lambda v: v.timeout),
    )

    baseline: Baseline = Field(default_factory=Baseline, description=Baseline.__doc__)
    replay: Replay | None = Field(default=None, description=Replay.__doc__)
    shadow: Shadow | None = Field(default=None, description=Shadow.__doc__)
    comparators: list[Comparator] = Field(
        min_length=1,
        max_length=MAX_COMPARATORS,
        description="How answers are compared; the candidate must pass every one.",
        json_schema_extra=COMPARATORS_LIST,
    )
    min_agreement: float = Field(
        default=0.99,
        ge=0,
        le=1,
        description="Agreement (beyond the noise floor) at or above which a comparator passes.",
    )
    noise_floor: bool = Field(
        default=True,
        description="Ask the baseline twice per sample and discount its own disagreement.",
    )
    timeout: Duration = Field(
        default="30m",
        description=f"Longest the stage may take (at least {MIN_TIMEOUT}); past it, it fails.",
    )
    replicas: int = Field(
        default=1, ge=1, le=100, description="Candidate replicas during the stage."
    )

    @field_validator("comparators")
    @classmethod
    def _unique(cls, comparators: list[Comparator]) -> list[Comparator]:
        names = [c.name for c in comparators]
        if len(set(names)) != len(names):
            raise ValueError("comparator names must be unique")
        return comparators
