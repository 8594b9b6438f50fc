// --output FILE: the batch's JSON records, one line each, that a stopped job resumes (RELIABILITY 17).
// A record is written whole (one write of the line, then fdatasync), so a kill leaves at most a partial
// last line; reopening drops that tail and reports which (prompt, sample) pairs are already done, so a
// rerun of the same command computes each of the rest exactly once.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <utility>

namespace gf {

class RecordLog {
 public:
  // Opens (creating) `path` for appending, after reading the records already there. Throws gf::Error
  // naming the file and line when a complete line is not a record of this tool.
  explicit RecordLog(const std::string& path);
  ~RecordLog();
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // (prompt_index, sample) of every record read at open; an error record (a prompt that cannot run)
  // counts as done with sample -1, which stands for all of that prompt's samples.
  const std::set<std::pair<int64_t, int64_t>>& done() const { return done_; }
  // Appends one record (a single-line JSON object) durably.
  void append(const std::string& json_line);

 private:
  std::string path_;
  int fd_ = -1;
  std::set<std::pair<int64_t, int64_t>> done_;
};

// Where SIGTERM (Slurm's time limit, srun forwarding a cancel) lands: a flag the batch loop checks
// between records, so the job stops without a partial record. Installed once; returns whether the
// signal has arrived.
void install_stop_on_sigterm();
bool stop_requested();

}  // namespace gf
