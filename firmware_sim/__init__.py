"""Device firmware simulator: communities, pure device firmware, behaviour model, scenarios, fleet mode.

The pure core (no sockets, no clock reads) is :mod:`~firmware_sim.community`,
:mod:`~firmware_sim.generator`, :mod:`~firmware_sim.firmware`, :mod:`~firmware_sim.edge_access`,
:mod:`~firmware_sim.behaviour`, :mod:`~firmware_sim.radio`, :mod:`~firmware_sim.checker` and
:mod:`~firmware_sim.mqtt_wire`; the MQTT adapters are :mod:`~firmware_sim.device`,
:mod:`~firmware_sim.runner` and :mod:`~firmware_sim.fleet`.

The simulator is an outsider to the platform: it imports only the site file's format (``twins.site``),
the protocol's public helpers (``twins.topics``, ``twins.kinds``) and the door-side decision module, and
provisions with the platform's command ``anfang site load`` (docs/simulator.md).
"""

from firmware_sim.behaviour import Action, BehaviourModel
from firmware_sim.community import Community, CommunityError, load_community
from firmware_sim.generator import Params, generate
from firmware_sim.provision import DeviceRegistrar, PeopleRegistrar, provision

__all__ = [
    "Action",
    "BehaviourModel",
    "Community",
    "CommunityError",
    "DeviceRegistrar",
    "Params",
    "PeopleRegistrar",
    "generate",
    "load_community",
    "provision",
]
