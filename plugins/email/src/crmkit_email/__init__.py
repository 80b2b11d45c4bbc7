"""crmkit-email: the ``email`` channel for crmkit.

SMTP sending with connection reuse, per-domain throttling and deterministic Message-IDs
(:mod:`~crmkit_email.channel`, :mod:`~crmkit_email.smtp`, :mod:`~crmkit_email.mime`); bounce and
complaint processing (:mod:`~crmkit_email.bounces`); one-click unsubscribe
(:mod:`~crmkit_email.unsubscribe`, :mod:`~crmkit_email.routes`); inbound mail
(:mod:`~crmkit_email.inbound`). Configure it in ``[plugins.email]``
(:class:`~crmkit_email.settings.EmailSettings`).
"""
