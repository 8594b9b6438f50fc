// The tensor-parallel group over MPI: the CPU backend's reductions and every rank's agreements.
// (The CUDA backend reduces with NCCL, bootstrapped from this communicator.)
#pragma once
// C API only: the deprecated C++ bindings would drag warnings into every includer.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdint>
#include <string>

namespace gf {

// MPI_Init_thread / MPI_Finalize; one per process, first thing in main.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// Owns a duplicate of MPI_COMM_WORLD and the node-local split (for picking GPUs); move-only.
class Comm {
 public:
  // Throws gf::Error on every rank when GPTFAST_COLLECTIVE_TIMEOUT_S (on any rank) is not a number of
  // seconds > 0.
  static Comm world();
  // A one-rank communicator over MPI_COMM_SELF (the draft model on rank 0). Not collective, so
  // local_size() is 1: give a backend built on it an explicit thread count.
  static Comm self();
  Comm(Comm&&) noexcept;
  Comm& operator=(Comm&&) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // among the ranks on this node
  int local_size() const { return local_size_; }
  MPI_Comm mpi() const { return comm_; }

  // The forward pass's collectives run under a deadline (GPTFAST_COLLECTIVE_TIMEOUT_S, default 120 s):
  // a stopped or hung peer, which mpirun cannot see, ends the job with one line instead of a hang.
  double timeout_s() const { return timeout_s_; }
  void allreduce_sum(float* x, int64_t n);
  void allgather(const float* local, int64_t n_local, float* out);  // out: size() * n_local
  void allgather(const int32_t* local, int64_t n_local, int32_t* out);  // out: size() * n_local
  void bcast(void* data, int64_t bytes, int root);
  bool all_ok(bool ok);  // true when every rank passed ok = true (MPI_LAND)
  void barrier();
  // Prints nothing; ends the whole job (MPI_Abort) so no rank is left in a collective.
  [[noreturn]] void abort(int code);
  // Once a collective's deadline has passed: the peers that do not answer a probe within window_s,
  // as words for an error line ("rank 3 did not answer"). Every live rank is stuck in the same
  // collective and probes too, so only a stopped, hung or dead rank stays silent. Use once, then end
  // the job: the probes' requests are left pending.
  std::string silent_peers(double window_s);

 private:
  Comm() = default;
  void wait(MPI_Request& req, const char* what);  // MPI_Test until done or the deadline
  void allgather_typed(const void* local, int64_t n_local, MPI_Datatype type, void* out);
  double timeout_s_ = 120;
  MPI_Comm comm_ = MPI_COMM_NULL, local_ = MPI_COMM_NULL;
  MPI_Comm probe_ = MPI_COMM_NULL;  // silent_peers()' own traffic: never matched by a pending collective
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace gf
