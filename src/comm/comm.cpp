// MPI session and the tensor-parallel communicator (CPU reductions, agreements, job abort).
#include "comm/comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/error.h"

namespace gf {

namespace {
void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  GF_FAIL("MPI: ", what, " failed: ", std::string(msg, len));
}
// MPI counts are int: larger messages go in chunks.
constexpr int64_t kChunk = int64_t(1) << 30;
}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  // FUNNELED: only the main thread calls MPI (OpenMP workers never do).
  mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  // Errors come back as codes we turn into gf::Error instead of MPI's default abort without a message.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

static double collective_timeout_s() {
  const char* v = std::getenv("GPTFAST_COLLECTIVE_TIMEOUT_S");
  const double t = v ? std::atof(v) : 120.0;
  return t > 0 ? t : 120.0;
}

Comm Comm::world() {
  Comm c;
  c.timeout_s_ = collective_timeout_s();
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &c.comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(c.comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c.comm_, &c.rank_);
  MPI_Comm_size(c.comm_, &c.size_);
  mpi_check(MPI_Comm_split_type(c.comm_, MPI_COMM_TYPE_SHARED, c.rank_, MPI_INFO_NULL, &c.local_),
            "MPI_Comm_split_type");
  MPI_Comm_rank(c.local_, &c.local_rank_);
  MPI_Comm_size(c.local_, &c.local_size_);
  return c;
}

Comm Comm::self() {
  Comm c;
  mpi_check(MPI_Comm_dup(MPI_COMM_SELF, &c.comm_), "MPI_Comm_dup(MPI_COMM_SELF)");
  MPI_Comm_set_errhandler(c.comm_, MPI_ERRORS_RETURN);
  return c;  // rank 0 of 1; local_ stays null (the destructor frees only what is set)
}

Comm::Comm(Comm&& o) noexcept { *this = std::move(o); }

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    std::swap(comm_, o.comm_);
    std::swap(local_, o.local_);
    rank_ = o.rank_, size_ = o.size_, local_rank_ = o.local_rank_, local_size_ = o.local_size_;
  }
  return *this;
}

Comm::~Comm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (local_ != MPI_COMM_NULL) MPI_Comm_free(&local_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void Comm::wait(MPI_Request& req, const char* what) {
  const double t0 = MPI_Wtime();
  for (int done = 0;;) {
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (MPI_Wtime() - t0 > timeout_s_) {
      std::fprintf(stderr,
                   "gptfast-tp: error: [rank %d] %s waited %.0f s for the other ranks: one of them stopped "
                   "responding (deadline GPTFAST_COLLECTIVE_TIMEOUT_S=%g); ending the job\n",
                   rank_, what, MPI_Wtime() - t0, timeout_s_);
      std::fflush(stderr);
      abort(1);
    }
  }
}

void Comm::allreduce_sum(float* x, int64_t n) {
  if (size_ == 1) return;
  for (int64_t off = 0; off < n; off += kChunk) {
    MPI_Request req;
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, x + off, int(std::min(kChunk, n - off)), MPI_FLOAT, MPI_SUM, comm_, &req),
              "MPI_Iallreduce");
    wait(req, "MPI_Allreduce");
  }
}

void Comm::allgather(const float* local, int64_t n_local, float* out) {
  GF_CHECK(n_local <= kChunk, "MPI: allgather of ", n_local, " floats per rank exceeds ", kChunk);
  MPI_Request req;
  mpi_check(MPI_Iallgather(local, int(n_local), MPI_FLOAT, out, int(n_local), MPI_FLOAT, comm_, &req),
            "MPI_Iallgather");
  wait(req, "MPI_Allgather");
}

void Comm::bcast(void* data, int64_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  for (int64_t off = 0; off < bytes; off += kChunk)
    mpi_check(MPI_Bcast(p + off, int(std::min(kChunk, bytes - off)), MPI_BYTE, root, comm_), "MPI_Bcast");
}

bool Comm::all_ok(bool ok) {
  int v = ok ? 1 : 0;
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, comm_), "MPI_Allreduce(ok)");
  return v != 0;
}

void Comm::barrier() { mpi_check(MPI_Barrier(comm_), "MPI_Barrier"); }

void Comm::abort(int code) {
  std::fflush(nullptr);  // streamed text and error lines out before the processes are killed
  MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort should not return; never fall back into a collective if it does
}

}  // namespace gf
