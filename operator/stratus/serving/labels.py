"""Labels and annotations the InferenceService controller reads and writes."""

INFERENCESERVICE_LABEL = "stratus.dev/inferenceservice"
REVISION_LABEL = "stratus.dev/revision"
# On the validator pod of a candidate: the InferenceService it validates. Not the
# inferenceservice label, so that no selector of the revisions' (Service, PDB, HPA) counts it.
VALIDATOR_LABEL = "stratus.dev/validates"
# Commands a person gives a rollout (`stratus promote|abort|retry`, or kubectl annotate). The
# value is any fresh token; the operator acts once per new value.
PROMOTE_ANNOTATION = "stratus.dev/promote"
PROMOTE_FULL_ANNOTATION = "stratus.dev/promote-full"
ABORT_ANNOTATION = "stratus.dev/abort"
RETRY_ANNOTATION = "stratus.dev/retry"
# Wakes a service idle reclamation scaled to zero (`stratus resume infs/NAME`): any new value.
WAKE_ANNOTATION = "stratus.dev/wake"
