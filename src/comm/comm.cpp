// MPI session and the tensor-parallel communicator (CPU reductions, agreements, job abort).
#include "comm/comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

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

// The one reader of GPTFAST_COLLECTIVE_TIMEOUT_S (the CPU collectives' deadline here, the GPU stream
// waits through timeout_s()). A value that is not a number of seconds > 0 is an error, not the default:
// a typo must not leave a 64-GPU job with a deadline nobody chose.
static double collective_timeout_s() {
  const char* v = std::getenv("GPTFAST_COLLECTIVE_TIMEOUT_S");
  if (!v) return 120.0;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  GF_CHECK(end != v && *end == '\0' && t > 0 && t < 1e9, "GPTFAST_COLLECTIVE_TIMEOUT_S: expected a number of seconds > 0, got '",
           v, "'");
  return t;
}

Comm Comm::world() {
  Comm c;
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &c.comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(c.comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c.comm_, &c.rank_);
  MPI_Comm_size(c.comm_, &c.size_);
  mpi_check(MPI_Comm_split_type(c.comm_, MPI_COMM_TYPE_SHARED, c.rank_, MPI_INFO_NULL, &c.local_),
            "MPI_Comm_split_type");
  MPI_Comm_rank(c.local_, &c.local_rank_);
  MPI_Comm_size(c.local_, &c.local_size_);
  mpi_check(MPI_Comm_dup(c.comm_, &c.probe_), "MPI_Comm_dup");
  // the environment may differ between ranks (mpirun -x): every rank fails alike or none does
  std::string bad;
  try {
    c.timeout_s_ = collective_timeout_s();
  } catch (const Error& e) {
    bad = e.what();
  }
  GF_CHECK(c.all_ok(bad.empty()), bad.empty() ? "GPTFAST_COLLECTIVE_TIMEOUT_S is not valid on another rank" : bad);
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
    std::swap(probe_, o.probe_);
    rank_ = o.rank_, size_ = o.size_, local_rank_ = o.local_rank_, local_size_ = o.local_size_;
    timeout_s_ = o.timeout_s_;
  }
  return *this;
}

Comm::~Comm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (local_ != MPI_COMM_NULL) MPI_Comm_free(&local_);
  if (probe_ != MPI_COMM_NULL) MPI_Comm_free(&probe_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void Comm::wait(MPI_Request& req, const char* what) {
  const double t0 = MPI_Wtime();
  for (int done = 0;;) {
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (MPI_Wtime() - t0 > timeout_s_) {
      const double waited = MPI_Wtime() - t0;
      const std::string who = silent_peers(2.0);
      std::fprintf(stderr,
                   "gptfast-tp: error: [rank %d] %s waited %.0f s for the other ranks: %s (deadline "
                   "GPTFAST_COLLECTIVE_TIMEOUT_S=%g); ending the job\n",
                   rank_, what, waited, who.c_str(), timeout_s_);
      std::fflush(stderr);
      abort(1);
    }
  }
}

std::string Comm::silent_peers(double window_s) {
  if (probe_ == MPI_COMM_NULL || size_ == 1) return "no peer to wait for";
  // Leaked on purpose: the requests may still be pending when the job is aborted.
  static const char kProbe = 1;
  auto* got = new std::vector<char>(size_, 0);
  std::vector<MPI_Request> recv(size_, MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    MPI_Request send;
    if (MPI_Isend(&kProbe, 1, MPI_CHAR, r, 0, probe_, &send) == MPI_SUCCESS) MPI_Request_free(&send);
    MPI_Irecv(got->data() + r, 1, MPI_CHAR, r, 0, probe_, &recv[r]);
  }
  std::vector<int> silent;
  const double t0 = MPI_Wtime();
  for (;;) {
    silent.clear();
    for (int r = 0; r < size_; ++r) {
      int done = 1;
      if (recv[r] != MPI_REQUEST_NULL && MPI_Test(&recv[r], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 0;
      if (!done) silent.push_back(r);
    }
    if (silent.empty() || MPI_Wtime() - t0 > window_s) break;
  }
  if (silent.empty()) return "every rank answered a probe: the ranks are out of step, or this one was itself stopped";
  std::string who = silent.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < silent.size() && i < 8; ++i) who += (i ? ", " : "") + std::to_string(silent[i]);
  if (silent.size() > 8) who += ", ... (" + std::to_string(silent.size()) + " in all)";
  return who + (silent.size() == 1 ? " did not answer: it stopped responding" : " did not answer: they stopped responding");
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

void Comm::allgather_typed(const void* local, int64_t n_local, MPI_Datatype type, void* out) {
  GF_CHECK(n_local <= kChunk, "MPI: allgather of ", n_local, " values per rank exceeds ", kChunk);
  MPI_Request req;
  mpi_check(MPI_Iallgather(local, int(n_local), type, out, int(n_local), type, comm_, &req), "MPI_Iallgather");
  wait(req, "MPI_Allgather");
}

void Comm::allgather(const float* local, int64_t n_local, float* out) {
  allgather_typed(local, n_local, MPI_FLOAT, out);
}

void Comm::allgather(const int32_t* local, int64_t n_local, int32_t* out) {
  allgather_typed(local, n_local, MPI_INT32_T, out);
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
