"""gestan-bridge: Gestan's Rendez-vous as CalDAV calendars, bridged to Google and Outlook."""
