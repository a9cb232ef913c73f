/* One FTI_Checkpoint of a float64 array per rank, timed as bench_checkpoint.py times mpickpt:
 * from an MPI_Barrier until every rank is done (a closing barrier), the max over ranks.
 *
 *   mpiexec -n 8 fti_bench CONFIG MB LEVEL REPEATS
 *
 * Prints one line per checkpoint on rank 0: "fti <level> <MB> <index> <seconds>"; the first
 * one (index 0) allocates FTI's files and buffers, as mpickpt's first checkpoint did. */
#include <fti.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc != 5) {
        fprintf(stderr, "usage: fti_bench CONFIG MB LEVEL REPEATS\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    long mb = atol(argv[2]);
    int level = atoi(argv[3]), repeats = atoi(argv[4]);
    if (FTI_Init(argv[1], MPI_COMM_WORLD) != FTI_SCES) MPI_Abort(MPI_COMM_WORLD, 3);
    int rank;
    MPI_Comm_rank(FTI_COMM_WORLD, &rank);
    long n = mb * (1L << 20) / 8;
    double *u = malloc(n * sizeof(double));
    for (long i = 0; i < n; i++) u[i] = i * 1e-3 + rank; /* touch every page */
    FTI_Protect(0, u, n, FTI_DBLE);
    for (int r = 0; r <= repeats; r++) {
        u[r] += 1.0; /* the state changes between checkpoints */
        MPI_Barrier(FTI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (FTI_Checkpoint(r + 1, level) != FTI_DONE) MPI_Abort(MPI_COMM_WORLD, 4);
        MPI_Barrier(FTI_COMM_WORLD);
        double dt = MPI_Wtime() - t0, worst;
        MPI_Reduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, FTI_COMM_WORLD);
        if (rank == 0) printf("fti %d %ld %d %.6f\n", level, mb, r, worst);
    }
    fflush(stdout);
    free(u);
    FTI_Finalize();
    MPI_Finalize();
    return 0;
}
