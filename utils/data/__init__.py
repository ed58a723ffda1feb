"""MIT-BIH beats and what is known about them: the verified database and beat cache (``mitdb``),
sampling by record, RR-interval rhythm features, the AAMI classes and DS1/DS2 split, the
patients' clinical data. Learners read ``mitdb`` and ``sampling``; imports only ``core``.
"""
