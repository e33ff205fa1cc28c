"""Retries: how long each wait is (the policy), and who holds the message meanwhile.

- :mod:`.policy`: :class:`~.policy.RetryPolicy`, how many deaths a delivery may
  have and how long each wait is.
- :mod:`.base`: :class:`~.base.RetryManagement`, the hook interface (Magento's
  RetryManagementInterface) that puts a message back in line after its wait.
- :mod:`.schedules`: the core's two implementations, registered ``trylast`` so
  a plugin can win (the transport's own delays; a schedule table in the store).
- :mod:`.outage`: the core's own retries through a short outage of the
  database or the broker, and telling one from a wrong setting.
"""
