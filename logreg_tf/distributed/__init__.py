"""More than one device: imported only when --strategy is not one_device.

    placement.py   the strategy and this process's role (Placement)
    tf_config.py   TF_CONFIG read and checked; which workers answer over TCP
    replicated.py  the train and eval steps over a strategy's replicas
    cluster.py     what the workers do together: collectives, same-run check,
                   the chief's state broadcast, the agreed stop, lost workers
"""
