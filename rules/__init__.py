"""Rules engine: YAML rules over device events, twins, telemetry and geofences → alarms and actions.

See docs/rules.md. Typical wiring::

    result = load_rules(Path("rules/builtin"), site)
    engine = RulesEngine(result.rules, site, actions=platform_actions)
"""
