"""crmkit-sms: the ``sms`` channel for crmkit.

Providers: Twilio's Messages API and any HTTP gateway (:mod:`~crmkit_sms.providers`), behind the
channel :class:`~crmkit_sms.channel.SmsChannel`; segment counting (:mod:`~crmkit_sms.segments`)
and cost estimates (:mod:`~crmkit_sms.estimate`, ``crmkit sms estimate``); the providers' signed
webhooks (:mod:`~crmkit_sms.routes`) for delivery reports and inbound texts, with STOP / START /
HELP keywords and new leads from unknown numbers (:mod:`~crmkit_sms.inbound`). Configure it in
``[plugins.sms]`` (:class:`~crmkit_sms.settings.SmsSettings`).
"""
