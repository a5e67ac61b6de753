"""results/ and the tables a run prints: read the committed records, render each page, draw its plots."""
