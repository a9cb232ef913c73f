"""Online recovery over ULFM, in small steps: who is who (:mod:`.membership`), the rebuild
transaction (:mod:`.transaction`), what to do when spares or redundancy run out
(:mod:`.fallback`), and what keeps a failed job from hanging (:mod:`.watchdog`)."""
