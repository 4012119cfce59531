"""The algorithm problem bank (算法题): its catalog, the judge that times large inputs, and
the linked-list/tree shapes the problems share. Reference solutions live only in solutions/."""
