"""RabbitMQ on aio-pika: the topology, confirmed publishing, and deliveries settled by
ack, a delayed retry through the delay queues, or the dead-letter exchange."""

from shared.adapters.rabbitmq.broker import Broker
from shared.adapters.rabbitmq.declare import delay_queue_arguments, quorum_queue_arguments
from shared.adapters.rabbitmq.delivery import RabbitDelivery
from shared.ports.broker import Unroutable

__all__ = [
    "Broker",
    "RabbitDelivery",
    "Unroutable",
    "delay_queue_arguments",
    "quorum_queue_arguments",
]
