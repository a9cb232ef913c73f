"""Every MPI message tag mpickpt sends with, in one place so that no two share a value (a test
checks it). They start at ``0x6D00`` ("m"), away from the small tags applications use."""

TAG_HALO = 0x6D64  # Devito's halo exchange, + the side the message travels towards (0 or 1)
TAG_DATA = 0x6D70  # checkpoint stream: the chunks of a piece
TAG_REBUILD = 0x6D71  # a rebuild: whole pieces to the rank that decodes them
TAG_HEAD = 0x6D72  # checkpoint stream: a piece's header (version, segment bytes)
TAG_SUMS = 0x6D73  # checkpoint stream: the checksums of the pieces sent
TAG_RING = 0x6D78  # xorset: the ring that builds a set's parity
TAG_SIZE = 0x6D79  # xorset: the segment sizes of a set's members
TAG_BUILD = 0x6D7A  # xorset: a rebuild from the set's survivors
TAG_RELEASE = 0x6D7B  # workers to idle spares: the job is over, with this exit code

# every tag value in use (Devito's halo takes two)
ALL = (
    TAG_HALO,
    TAG_HALO + 1,
    TAG_DATA,
    TAG_REBUILD,
    TAG_HEAD,
    TAG_SUMS,
    TAG_RING,
    TAG_SIZE,
    TAG_BUILD,
    TAG_RELEASE,
)
