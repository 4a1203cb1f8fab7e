"""What integrating systems use to publish: the event contract, the publisher, the simulator."""
