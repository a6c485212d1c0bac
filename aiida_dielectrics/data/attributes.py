"""Read-only Python properties backed by node attributes."""


def attribute_property(name: str) -> property:
    """A property returning the node attribute ``name`` (``None`` when the node does not have it)."""
    return property(lambda node: node.base.attributes.get(name, None), doc=f'The ``{name}`` attribute.')
