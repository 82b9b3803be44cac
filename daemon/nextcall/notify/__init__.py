"""Callback reminders, result-code notifications, and the channels that carry them.

``events``: subscriptions of connections to agents' event lines (``subscribe``);
``email``: SMTP delivery; ``reminders``: the APScheduler jobs that fire a reminder N
minutes before a callback and record that it was sent; ``notices``: e-mails on committed
dispositions of ``notify`` codes, with an iCalendar invite for appointments.
"""
