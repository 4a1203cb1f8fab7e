"""The app factory, without a broker: what the agents read from."""

from __future__ import annotations

from resumewatch.settings import Settings
from streams.app import CHUNK_BUFFER, PACKED_BUFFER, create_app


def test_every_agent_buffers_a_bounded_number_of_messages() -> None:
    """The input's stream buffer holds CHUNK_BUFFER chunks, an internal topic's
    PACKED_BUFFER packed messages: not Faust's default of 20,000, which for chunks of 1,000
    records let a worker read a backlog of millions of events into memory."""
    s = Settings(partitions=3)
    app = create_app(s)
    wanted = {
        "enterprise_agent": (s.input_topic, CHUNK_BUFFER),
        "region_agent": (s.partials_topic, PACKED_BUFFER),
        "supply_agent": (s.supply_topic, PACKED_BUFFER),
    }
    assert set(app.agents) == set(wanted)
    for name, agent in app.agents.items():
        topic, size = wanted[name]
        assert agent.channel.get_topic_name() == topic
        stream_channel = agent.channel_iterator.clone(is_iterator=True)
        assert stream_channel.queue.maxsize == size
        assert size < app.conf.stream_buffer_maxsize
    # The internal topics keep what App.topic() gave them; the input is committed by the
    # checkpoint, not through Faust's acknowledgements.
    assert not app.agents["enterprise_agent"].channel.acks
    for name in ("region_agent", "supply_agent"):
        channel = app.agents[name].channel
        assert channel.internal and channel.partitions == 3 and channel.acks
