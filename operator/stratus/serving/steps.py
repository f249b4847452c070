"""The canary step machine, pure: a person's commands (promote, promote-full, abort, retry), a
new revision starting a canary (or replacing the stable, with Recreate) and superseding one in
flight, each step held for its pause and its analysis then advanced, promotion, rollback (by
analysis, by a person, or at the progress deadline), and the replaced stable retired."""

from __future__ import annotations

import re
from typing import Any

from stratus.conditions import parse_time, precise_timestamp
from stratus.serving import builders, children, validator, verdict
from stratus.serving.context import Pass
from stratus.serving.labels import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    PROMOTE_FULL_ANNOTATION,
    RETRY_ANNOTATION,
)

COMMANDS = (PROMOTE_ANNOTATION, PROMOTE_FULL_ANNOTATION, ABORT_ANNOTATION, RETRY_ANNOTATION)


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", text))


class Steps:
    """The step machine for one pass. Built first: a command is taken (recorded as handled, so
    the same annotation value is not acted on twice) before anything else is decided."""

    def __init__(self, p: Pass) -> None:
        self.p = p
        self.status = p.status
        handled = self.status.setdefault("handledCommands", {})
        annotations = p.obs.annotations
        self.commands = {
            c for c in COMMANDS if annotations.get(c) and annotations[c] != handled.get(c)
        }
        for command in self.commands:
            handled[command] = annotations[command]

    def run(self) -> None:
        """Retires a replaced stable that has served its time, takes a new revision in, and
        moves the canary on."""
        p = self.p
        self.retire()
        stable = self.status.get("stableRevision")
        if stable is None:
            self.status["stableRevision"] = p.revision
            p.event("Deployed", f"revision {p.revision} deployed as stable")
        elif p.revision not in (stable, self.status.get("canaryRevision")):
            self.new_revision(stable)
        elif p.revision == stable and self.status.get("canaryRevision"):
            self.cancel_canary("the spec returned to the stable revision")
        if self.status.get("canaryRevision"):
            self.canary()

    def new_revision(self, stable: str) -> None:
        p = self.p
        if p.revision == self.status.get("abortedRevision") and (
            RETRY_ANNOTATION not in self.commands
        ):
            return
        aborted = self.status.pop("abortedRevision", None)
        if aborted and aborted != p.revision:
            # Kept at zero for inspection only until something newer is tried.
            p.plan.delete.append(builders.deployment_name(p.obs.owner, aborted))
        previous = self.status.get("canaryRevision")
        if previous:
            p.plan.delete.append(builders.deployment_name(p.obs.owner, previous))
            p.event("CanarySuperseded", f"canary {previous} superseded by {p.revision}")
        if p.spec.rollout.strategy == "Recreate":
            self.status["stableRevision"] = p.revision
            p.plan.delete.append(builders.deployment_name(p.obs.owner, stable))
            p.event("Recreated", f"revision {p.revision} replaced {stable}")
            self.clear_canary()
            return
        validation = p.spec.rollout.validation
        self.status.update(
            {
                "canaryRevision": p.revision,
                "currentStep": 0,
                "canaryWeight": 0 if validation else p.steps[0].weight,
                "stepStartedAt": precise_timestamp(p.obs.now),
                "canaryUnreadySince": precise_timestamp(p.obs.now),
                "lastAnalysis": {"failures": 0, "inconclusive": 0, "results": []},
            }
        )
        if validation:
            self.status["validation"] = {
                "revision": p.revision,
                "phase": "Running",
                "startedAt": precise_timestamp(p.obs.now),
            }
            sources = " and ".join(
                s for s, on in (("replay", validation.replay), ("shadow", validation.shadow)) if on
            )
            p.event(
                "ValidationStarted",
                f"revision {p.revision} is a candidate, validated by {sources} against "
                f"{'an external baseline' if validation.baseline.url else f'stable {stable}'} "
                "before it gets any traffic",
            )
            return
        p.event(
            "CanaryStarted",
            f"revision {p.revision} is a canary at {p.steps[0].weight}% (stable {stable})",
        )

    def canary(self) -> None:
        if ABORT_ANNOTATION in self.commands:
            self.abort("aborted by a person")
            return
        if PROMOTE_FULL_ANNOTATION in self.commands:
            self.promote()
            return
        if self.past_deadline() or self.validating():
            return
        ready = self.in_place()
        if ready:
            self.mark_in_place()
        analysis = self.status.setdefault("lastAnalysis", {"failures": 0, "inconclusive": 0})
        if (
            self.p.spec.rollout.analysis.metrics
            and ready
            and not self.judge(analysis)
            and not self.promoted_past_inconclusive(analysis)
        ):
            return
        if self.status.get("phase") == "Paused" and PROMOTE_ANNOTATION not in self.commands:
            return
        if children.route_missing(self.p):
            return  # the split cannot be applied, so the canary does not advance
        if PROMOTE_ANNOTATION in self.commands or (ready and self.pause_over(analysis)):
            self.advance()

    def validating(self) -> bool:
        """Runs the validation stage when the canary is in it; True then: no step moves."""
        if not children.validating(self.p):
            return False
        self.validate()
        return True

    def validate(self) -> None:
        """The validation stage: its report, once the validator has written one, passes the
        candidate on to the first step or rolls it back; so does a validator that ended without
        one, or a stage past its timeout. `stratus promote` skips it."""
        p = self.p
        record = self.status["validation"]
        settings = p.spec.rollout.validation
        if settings is None:
            self.end_validation("Passed", "skipped: spec.rollout.validation was removed")
            return
        if PROMOTE_ANNOTATION in self.commands:
            self.end_validation("Passed", "skipped by a person (stratus promote)")
            return
        found = children.validator_of(p)
        if found is not None and found.report is not None:
            validator.record(record, found.report)
            reason = record.get("reason") or ""
            if found.report.get("verdict") == "Passed":
                self.end_validation("Passed", reason or "every comparator passed")
            else:
                self.end_validation("Failed", reason or "the validator reported a failure")
            return
        if found is not None and found.failure:
            self.end_validation("Failed", f"the validator failed: {found.failure}")
            return
        started = parse_time(record.get("startedAt")) or p.obs.now
        allowed = parse_duration(settings.timeout) + validator.START_ALLOWANCE
        waited = (p.obs.now - started).total_seconds()
        if waited >= allowed:
            self.end_validation(
                "Failed",
                f"no report within validation.timeout ({settings.timeout}) and "
                f"{validator.START_ALLOWANCE} s for the validator pod to start",
            )
            return
        p.plan.later(min(5.0, allowed - waited))

    def end_validation(self, phase: str, reason: str) -> None:
        p = self.p
        record = self.status["validation"]
        record["phase"] = phase
        record["reason"] = reason
        canary = self.status["canaryRevision"]
        if phase == "Failed":
            self.abort(f"validation failed: {reason}", reason="ValidationFailed")
            return
        p.event("ValidationPassed", f"candidate {canary} validated: {reason}")
        first = p.steps[0].weight
        self.status.update(
            {
                "currentStep": 0,
                "canaryWeight": first,
                "stepStartedAt": precise_timestamp(p.obs.now),
                "canaryUnreadySince": precise_timestamp(p.obs.now),
            }
        )
        p.event("CanaryStarted", f"revision {canary} is a canary at {first}% (validated)")

    def in_place(self) -> bool:
        """Whether the current step's split stands: every canary pod it needs ready, and the
        stable at its size for the step (so a pause or an analysis sees the step's traffic)."""
        ready, wanted = children.canary_pods(self.p)
        if ready < wanted:
            return False
        target = children.stable_target(self.p)
        view = self.p.deployments.get(self.status["stableRevision"])
        return target is None or view is None or view.replicas == target

    def mark_in_place(self) -> None:
        """Stamps when the current step's split first stood: its pause counts from then, not
        from when the step was asked for, so a slow start does not eat the pause. A stamp older
        than the step's start is a previous step's (or one before a hold restarted the step)."""
        stamp = parse_time(self.status.get("stepInPlaceAt"))
        started = parse_time(self.status.get("stepStartedAt"))
        if stamp is None or (started is not None and stamp < started):
            self.status["stepInPlaceAt"] = precise_timestamp(self.p.obs.now)

    def past_deadline(self) -> bool:
        """Rolls the canary back when its pods have not all been ready for longer than
        rollout.progressDeadline: from the start of the step, or since one stopped being ready."""
        p = self.p
        ready, wanted = children.canary_pods(p)
        if ready >= wanted:
            self.status.pop("canaryUnreadySince", None)
            return False
        since = parse_time(self.status.get("canaryUnreadySince"))
        if since is None:
            since = p.obs.now
            self.status["canaryUnreadySince"] = precise_timestamp(since)
        deadline = p.spec.rollout.progress_deadline
        waited = (p.obs.now - since).total_seconds()
        if waited < parse_duration(deadline):
            p.plan.later(parse_duration(deadline) - waited)
            return False
        step = self.status.get("currentStep", 0)
        self.abort(
            f"{ready} of {wanted} canary pods ready after rollout.progressDeadline ({deadline}), "
            f"at step {step + 1} of {len(p.steps)}",
            reason="ProgressDeadlineExceeded",
        )
        return True

    def judge(self, analysis: dict[str, Any]) -> bool:
        """Asks for a measurement when one is due, and acts on the verdict of one taken;
        False when the rollout must stop here."""
        p = self.p
        settings = p.spec.rollout.analysis
        interval = parse_duration(settings.interval)
        if p.obs.analysis is None:
            last = parse_time(analysis.get("time"))
            if last is None or (p.obs.now - last).total_seconds() >= interval:
                p.plan.analyze = True
            else:
                p.plan.later(interval - (p.obs.now - last).total_seconds())
            return True
        judgement = verdict.judge(
            settings, analysis, p.obs.analysis, p.obs.now, self.status.get("currentStep", 0)
        )
        p.plan.later(interval)
        if judgement.verdict == "Failed":
            self.abort("analysis failed: " + judgement.message)
            return False
        if judgement.verdict == "Inconclusive":
            self.status["phase"] = "Paused"
            p.event(
                "AnalysisInconclusive", "paused for a person: " + judgement.message, warning=True
            )
            return False
        return True

    def promoted_past_inconclusive(self, analysis: dict[str, Any]) -> bool:
        """A person's `stratus promote` given while the analysis is inconclusive (the judge has
        just paused): they have looked at it, so the step advances, and the inconclusive count
        starts again. A failed analysis rolls back whatever was asked."""
        if PROMOTE_ANNOTATION not in self.commands or self.status.get("phase") != "Paused":
            return False
        if not self.status.get("canaryRevision"):
            return False
        analysis["inconclusive"] = 0
        return True

    def pause_over(self, analysis: dict[str, Any]) -> bool:
        p = self.p
        step = p.steps[self.status.get("currentStep", 0)]
        started = parse_time(self.status.get("stepInPlaceAt")) or p.obs.now
        held = (p.obs.now - started).total_seconds()
        if p.spec.rollout.analysis.metrics and analysis.get("stepMeasured") != self.status.get(
            "currentStep", 0
        ):
            return False  # every step is measured at least once
        if step.pause is not None and step.pause.duration is None:
            self.status["phase"] = "Paused"
            self.status["message"] = (
                f"step {self.status.get('currentStep', 0) + 1} waits for `stratus promote`"
            )
            return False
        hold = parse_duration(
            step.pause.duration
            if step.pause and step.pause.duration
            else p.spec.rollout.analysis.interval
        )
        if held < hold:
            p.plan.later(hold - held)
            return False
        return True

    def advance(self) -> None:
        p = self.p
        following = self.status.get("currentStep", 0) + 1
        if following >= len(p.steps):
            self.promote()
            return
        weight = p.steps[following].weight
        self.status.update(
            {
                "currentStep": following,
                "canaryWeight": weight,
                "stepStartedAt": precise_timestamp(p.obs.now),
                "phase": "Progressing",
            }
        )
        self.status.pop("stepInPlaceAt", None)
        ready, wanted = children.canary_pods(p)
        if ready < wanted:
            self.status["canaryUnreadySince"] = self.status["stepStartedAt"]
        else:
            self.status.pop("canaryUnreadySince", None)
        p.event(
            "StepAdvanced",
            f"canary {self.status['canaryRevision']} at {weight}% "
            f"(step {following + 1} of {len(p.steps)})",
        )

    def promote(self) -> None:
        p = self.p
        canary, stable = self.status["canaryRevision"], self.status.get("stableRevision")
        self.status["stableRevision"] = canary
        if stable and stable != canary:
            self.status["retiringRevision"] = stable
            self.status["retireAt"] = precise_timestamp(p.obs.now + p.obs.retire_after)
            p.plan.later(p.obs.retire_after.total_seconds())
        self.clear_canary()
        p.plan.outcomes.append("promoted")
        p.event("Promoted", f"revision {canary} promoted to stable")

    def abort(self, why: str, reason: str = "RolledBack") -> None:
        p = self.p
        canary = self.status["canaryRevision"]
        self.status["abortedRevision"] = canary
        self.clear_canary()
        self.status["phase"] = "Degraded"
        p.plan.outcomes.append("aborted")
        p.condition("Healthy", False, reason, f"canary {canary} rolled back: {why}")
        p.event(reason, f"canary {canary} rolled back: {why}", warning=True)

    def cancel_canary(self, why: str) -> None:
        canary = self.status["canaryRevision"]
        self.p.plan.delete.append(builders.deployment_name(self.p.obs.owner, canary))
        self.clear_canary()
        self.p.event("CanaryCancelled", f"canary {canary} cancelled: {why}")

    def clear_canary(self) -> None:
        for key in (
            "canaryRevision",
            "currentStep",
            "stepStartedAt",
            "stepInPlaceAt",
            "canaryUnreadySince",
        ):
            self.status.pop(key, None)
        self.status["canaryWeight"] = 0

    def retire(self) -> None:
        p = self.p
        retiring = self.status.get("retiringRevision")
        due = parse_time(self.status.get("retireAt"))
        if not retiring or due is None:
            return
        if p.obs.now >= due:
            p.plan.delete.append(builders.deployment_name(p.obs.owner, retiring))
            self.status.pop("retiringRevision")
            self.status.pop("retireAt")
        else:
            p.plan.later((due - p.obs.now).total_seconds())
