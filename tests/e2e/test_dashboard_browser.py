"""The dashboard in a real browser (headless Chromium through selenium) against the cluster: a
TrainingJob preempted once and an InferenceService paused in a canary under analysis against a
real Prometheus, their pages loaded and read, their charts drawn (traffic and the analysis
metric: SVG shapes with geometry, and pixels on the screenshot), and a promotion given from the
page. The screenshots are the README's (docs/dashboard-*.png)."""

from __future__ import annotations

import copy
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.browser import chromium
from kubernetes import client
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from stratus.api.common import GROUP, VERSION
from stratus.dashboard.live import Live
from stratus.dashboard.server import Dashboard, make_server
from stratus.dashboard.source import KubeSource
from stratus.devcluster import kubeapi
from stratus.devcluster.nodepools import SIMULATED_POD_SPEC
from tests.builders import TrainingJobBuilder
from tests.conftest import Cluster
from tests.e2e.test_serving_analysis import publish, revision
from tests.prometheus import ERROR_RATE, Exporter, Prometheus
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("operator")
DOCS = Path(__file__).resolve().parents[2] / "docs"
Obj = dict[str, Any]


@pytest.fixture
def dashboard(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The dashboard with the test's kubeconfig, for the test's namespace: its address."""
    live = Live(KubeSource(cluster.kubeconfig), namespace)
    server = make_server(Dashboard(live), "127.0.0.1", 0)
    live.start()
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        live.stop()
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    found = chromium()
    try:
        yield found
    finally:
        found.quit()


# Live updates re-render the page under the test, so it reads the page in one script (which a
# re-render cannot interleave with) and waits through elements that a re-render replaced.
def wait(browser: webdriver.Chrome, timeout: float = 30) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(
        browser, timeout, 0.2, ignored_exceptions=(StaleElementReferenceException,)
    )


def read(browser: webdriver.Chrome, css: str, attribute: str = "innerText") -> list[str]:
    """The text (or one attribute) of every element the selector finds, read at one instant."""
    found: list[str] = browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), "
        "e => (arguments[1] === 'innerText' ? e.innerText : e.getAttribute(arguments[1])) || '')",
        css,
        attribute,
    )
    return found


def load(browser: webdriver.Chrome, url: str) -> None:
    browser.get(url)
    wait(browser).until(lambda b: b.execute_script("return document.body.dataset.loaded"))


def until(browser: webdriver.Chrome, what: str, css: str, count: int = 1) -> None:
    try:
        wait(browser, 60).until(lambda b: len(read(b, css)) >= count)
    except TimeoutException as exc:
        raise AssertionError(
            f"{what}: no {count} of {css}; page: {browser.find_element(By.ID, 'main').text[:2000]}"
        ) from exc


def pixels(png: bytes) -> list[tuple[int, int, int]]:
    """The RGB pixels of a PNG as Chromium writes them (8-bit RGB or RGBA, not interlaced)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, data = 8, b""
    width = height = channels = 0
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0)
            assert colour in (2, 6)
            channels = 4 if colour == 6 else 3
        elif kind == b"IDAT":
            data += body
        at += 12 + length
    raw, stride = zlib.decompress(data), width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if method == 1:
                line[i] = (line[i] + left) & 0xFF
            elif method == 2:
                line[i] = (line[i] + up) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif method == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        rows.append(line)
        previous = line
    return [(row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, stride, channels)]


def assert_drawn(browser: webdriver.Chrome, element_id: str, colour: tuple[int, int, int]) -> None:
    """The element's screenshot is not blank: a share of it differs from its background, and
    some of it has the colour its shapes are drawn in."""
    found = pixels(
        wait(browser).until(lambda b: b.find_element(By.ID, element_id).screenshot_as_png)
    )
    background, _ = Counter(found).most_common(1)[0]
    drawn = sum(1 for p in found if p != background)
    assert drawn >= 0.01 * len(found), f"{drawn} of {len(found)} pixels drawn"
    near = sum(1 for p in found if sum(abs(a - b) for a, b in zip(p, colour, strict=True)) < 40)
    assert near >= 20, f"{near} pixels near {colour}"


def custom(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def service(name: str, prometheus: Prometheus) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "image": "serve:1",
            "model": {"uri": "https://models.example.com/m.bin"},
            "replicas": {"min": 4, "max": 4},
            "rollout": {
                "strategy": "Canary",
                "analysis": {
                    "interval": "1s",
                    "prometheusAddress": prometheus.url,
                    "metrics": [{"name": "error-rate", "query": ERROR_RATE, "max": 0.05}],
                },
                "steps": [{"weight": 50, "pause": {}}, {"weight": 100}],
            },
            "podTemplate": {"spec": copy.deepcopy(SIMULATED_POD_SPEC)},
        },
    }


def test_the_dashboard_shows_attempts_and_a_canary_and_promotes_it(
    cluster: Cluster,
    namespace: str,
    dashboard: str,
    browser: webdriver.Chrome,
    prometheus: Prometheus,
    exporter: Exporter,
) -> None:
    api, core = custom(cluster), client.CoreV1Api(cluster.api)

    def get(plural: str, name: str) -> Obj:
        obj: Obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        return obj

    # A TrainingJob on spot, preempted once, resumed from its checkpoint.
    api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "trainingjobs",
        TrainingJobBuilder("train")
        .spot()
        .team("nlp")
        .runs_for("10m")
        .reports("/ckpt/step-100", 100)
        .build(),
    )

    def running_pod(attempt: int) -> Any:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"stratus.dev/trainingjob=train,stratus.dev/attempt={attempt}"
        ).items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_for("attempt 1 running", lambda: running_pod(1))
    kubeapi.connect(cluster.kubeconfig).preempt(pod.spec.node_name, replace=True)
    wait_for("attempt 2 running", lambda: running_pod(2), timeout=90)

    # An InferenceService whose second revision waits at 50% for a person, its error rate
    # analysed every second meanwhile.
    web = service("web", prometheus)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "inferenceservices", web)
    publish(exporter, prometheus, revision(web, "serve:2"), error_rate=0.01)
    wait_for(
        "web Healthy",
        lambda: (get("inferenceservices", "web").get("status") or {}).get("phase") == "Healthy",
    )
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "inferenceservices", "web", {"spec": {"image": "serve:2"}}
    )
    wait_for(
        "web paused at 50%",
        lambda: (
            (s := get("inferenceservices", "web").get("status") or {}).get("phase") == "Paused"
            and s.get("canaryWeightAchieved") == 50
        ),
        timeout=90,
    )
    DOCS.mkdir(exist_ok=True)

    # The list: both kinds, then only what the kind filter keeps.
    load(browser, f"{dashboard}/")
    until(browser, "both resources listed", "#resources tbody tr[data-name]", 2)
    (table,) = read(browser, "#resources")
    for text in ("train", "web", "nlp"):
        assert text in table
    # The TrainingJob's spend, metered from its pods at the session's price table.
    cost_cell = read(browser, '#resources tr[data-name="train"] td')[6]
    amount, currency = cost_cell.split()
    assert (float(amount) >= 0, currency) == (True, "USD"), cost_cell
    browser.save_screenshot(str(DOCS / "dashboard-list.png"))
    Select(browser.find_element(By.NAME, "kind")).select_by_value("TrainingJob")
    assert read(browser, "#resources tbody tr[data-name]", "data-name") == ["train"]

    # The TrainingJob: two attempts on spot, the first preempted, on one timeline.
    load(browser, f"{dashboard}/trainingjobs/{namespace}/train")
    until(browser, "two attempts drawn", "#timeline rect.bar", 2)
    assert all(float(w or 0) > 0 for w in read(browser, "#timeline rect.bar", "width"))
    assert all("spot" in c for c in read(browser, "#timeline rect.bar", "class"))
    rows = read(browser, "#attempts tbody tr")
    assert "Preempted" in rows[0], rows
    assert "Running" in rows[1], rows
    assert "100" in rows[1]  # attempt 2 resumed from step 100
    assert read(browser, "#timeline line.mark.Preempted")
    browser.save_screenshot(str(DOCS / "dashboard-trainingjob.png"))
    assert_drawn(browser, "timeline", (232, 163, 61))  # the spot colour

    # The InferenceService: at step 1 of 2, its traffic chart drawn from Events and the watch.
    load(browser, f"{dashboard}/inferenceservices/{namespace}/web")
    until(browser, "the traffic chart", "#chart-0 path.series", 1)
    (current,) = read(browser, "#steps .step.current")
    assert "achieved 50%" in current
    assert all(len(d) > 10 for d in read(browser, "#chart-0 path.series", "d"))
    # The analysis chart: one point per analysis while the page watches.
    until(browser, "the analysis chart", "#chart-1 path.series", 1)
    assert read(browser, "#chart-1", "aria-label") == ["Analysis: error-rate"]
    wait(browser).until(lambda b: len(read(b, "#chart-1 circle.dot")) >= 3)
    browser.save_screenshot(str(DOCS / "dashboard-inferenceservice.png"))
    assert_drawn(browser, "chart-0", (61, 123, 232))  # the first series
    assert_drawn(browser, "chart-1", (46, 157, 91))  # a passed analysis

    # Promote from the page: the operator's annotation, an Event saying who, then the rollout.
    # The button found before a live re-render is still the page's button after it.
    promote = browser.find_element(By.ID, "cmd-promote")
    drawn = len(read(browser, "#chart-1 circle.dot"))
    wait(browser).until(lambda b: len(read(b, "#chart-1 circle.dot")) > drawn)
    promote.click()
    wait(browser).until(
        lambda b: "promote requested by" in b.find_element(By.ID, "command-status").text
    )
    obj = get("inferenceservices", "web")
    assert "stratus.dev/promote" in obj["metadata"]["annotations"]
    events = core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.uid={obj['metadata']['uid']},reason=PromoteRequested",
    ).items
    assert [e.source.component for e in events] == ["stratus-dashboard"]
    wait_for(
        "web promoted",
        lambda: (
            (s := get("inferenceservices", "web").get("status") or {}).get("phase") == "Healthy"
            and not s.get("canaryRevision")
        ),
        timeout=90,
    )
    # The page follows on its own (Server-Sent Events): no reload.
    wait(browser).until(lambda b: "Promoted" in "".join(read(b, "#events")))
