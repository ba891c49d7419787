"""Everything the toolkit shows a person: PNG pictures (`images`), matplotlib charts
(`figures`), terminal tables (`tables`) and the inspector's HTML page (`inspection`).

Nothing here is imported by ``import unetseg``; matplotlib loads on the first chart drawn.
"""
