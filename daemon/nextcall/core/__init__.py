"""The pure core: no asyncio, no I/O, no clock, no logging. Time is always an argument."""
