"""The INO2 form: SDC ``$populate`` from the card's features (``populate``, ``operation``) and
the SMART on FHIR app that completes it (``smart``, ``web``, ``pages``)."""
