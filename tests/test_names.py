"""Every name the runtimes build fits its engine's rules at the longest inputs the program and the coordinator accept.

The engines' rules, as the engines apply them (each seen refusing one character more on the lab swarm):
- Swarm service: a DNS label of at most 63 characters (swarmkit manager/controlapi `validateAnnotations`).
- Swarm secret or config: at most 64 of [a-zA-Z0-9-_.], first and last alphanumeric
  (`validateConfigOrSecretAnnotations`).
- Docker container: moby's `RestrictedNamePattern`, no length limit.
"""

from __future__ import annotations

import re

import pytest

from coordinator.fleet import (
    KEY_PATTERN,
    MAX_AGENTS_PER_ROLE_CEILING,
    MAX_KEY_CHARS,
    MAX_SECRET_NAME_CHARS,
    SECRET_NAME_PATTERN,
)
from coordinator.runtime import MAX_SLOT_NAME_CHARS, slot_name
from coordinator.runtimes.swarm import (
    SECRET_DIGEST_CHARS,
    SECRET_NAME_MAX_CHARS,
    SERVICE_NAME_MAX_CHARS,
    docker_secret_name,
)
from coordinator.values import MAX_FLEET_ID_CHARS, ValueProblem, parse_fleet_id, parse_swarm_fleet_id
from deploy.coordinator_spec import coordinator_spec
from deploy.stack_config import parse_stack_config
from roster import ROSTER

SWARM_SERVICE_NAME = re.compile(r"[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*")  # swarmkit's isValidDNSName
SWARM_SECRET_NAME = re.compile(r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?")  # isValidConfigOrSecretName
DOCKER_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # moby's RestrictedNamePattern

# The longest accepted inputs, in the characters that make a name longest or oddest: each is checked as accepted.
FLEET_IDS = ["f" * MAX_FLEET_ID_CHARS, "Agent-Fleet_Production9-", "0_" * (MAX_FLEET_ID_CHARS // 2)]
SWARM_FLEET_IDS = FLEET_IDS  # none holds a '.', which a fleet id on a swarm may not
DOCKER_FLEET_IDS = [*FLEET_IDS, "agent.fleet.prod.eu-west1"[:MAX_FLEET_ID_CHARS], "a.b"]
ROLE_KEYS = ["r" * MAX_KEY_CHARS, ("a_" * MAX_KEY_CHARS)[:MAX_KEY_CHARS - 1] + "9"]
SECRET_NAMES = ["S" * MAX_SECRET_NAME_CHARS, ("A_" * MAX_SECRET_NAME_CHARS)[:MAX_SECRET_NAME_CHARS],
                "CLAUDE_CODE_OAUTH_TOKEN_"]
HIGHEST_SLOT = MAX_AGENTS_PER_ROLE_CEILING


def test_the_inputs_are_the_longest_accepted() -> None:
    for fleet_id in FLEET_IDS:
        assert parse_fleet_id(fleet_id) == parse_swarm_fleet_id(fleet_id) == fleet_id
        assert len(fleet_id) == MAX_FLEET_ID_CHARS
    for key in ROLE_KEYS:
        assert KEY_PATTERN.fullmatch(key) and len(key) == MAX_KEY_CHARS
    for name in SECRET_NAMES:
        assert SECRET_NAME_PATTERN.fullmatch(name) and len(name) == MAX_SECRET_NAME_CHARS
        assert not SECRET_NAME_PATTERN.fullmatch(name + "X")


@pytest.mark.parametrize("fleet_id", SWARM_FLEET_IDS)
@pytest.mark.parametrize("role", ROLE_KEYS)
def test_an_agent_s_service_name_is_a_dns_label_at_the_longest_inputs(fleet_id: str, role: str) -> None:
    name = slot_name(fleet_id, role, HIGHEST_SLOT)
    assert len(name) == MAX_SLOT_NAME_CHARS <= SERVICE_NAME_MAX_CHARS
    assert SWARM_SERVICE_NAME.fullmatch(name)


@pytest.mark.parametrize("fleet_id", SWARM_FLEET_IDS)
@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_an_agent_secret_s_docker_secret_name_fits_swarm_at_the_longest_inputs(fleet_id: str, secret: str) -> None:
    name = docker_secret_name(fleet_id, secret, b"any value at all")
    assert len(name) == SECRET_NAME_MAX_CHARS and SWARM_SECRET_NAME.fullmatch(name)
    # Still one name per value, and another for another value.
    assert docker_secret_name(fleet_id, secret, b"any value at all") == name
    assert docker_secret_name(fleet_id, secret, b"another value") != name
    assert re.fullmatch(rf".*-[0-9a-f]{{{SECRET_DIGEST_CHARS}}}", name) and SECRET_DIGEST_CHARS >= 14


@pytest.mark.parametrize("fleet_id", SWARM_FLEET_IDS)
def test_the_coordinator_s_service_name_is_a_dns_label(fleet_id: str) -> None:
    name = coordinator_spec(fleet_id=fleet_id, config=parse_stack_config({"repository": "acme/shop"}, ROSTER)).name
    assert len(name) <= SERVICE_NAME_MAX_CHARS and SWARM_SERVICE_NAME.fullmatch(name)


@pytest.mark.parametrize("fleet_id", DOCKER_FLEET_IDS)
@pytest.mark.parametrize("role", ROLE_KEYS)
def test_an_agent_s_container_names_are_docker_names_at_the_longest_inputs(fleet_id: str, role: str) -> None:
    name = slot_name(fleet_id, role, HIGHEST_SLOT)
    kept_aside = f"{name}.{'0123456789ab'}"  # docker.py's vacate: <name>.<id12>
    assert DOCKER_CONTAINER_NAME.fullmatch(name) and DOCKER_CONTAINER_NAME.fullmatch(kept_aside)


@pytest.mark.parametrize("fleet_id", DOCKER_FLEET_IDS)
def test_a_swarm_takes_exactly_the_fleet_ids_it_can_name_services_after(fleet_id: str) -> None:
    assert parse_fleet_id(fleet_id) == fleet_id
    try:
        accepted = parse_swarm_fleet_id(fleet_id) == fleet_id
    except ValueProblem:
        accepted = False
    assert accepted == bool(SWARM_SERVICE_NAME.fullmatch(slot_name(fleet_id, "api", 1)))
